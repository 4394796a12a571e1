"""A small file to try kimi-lsp on: `kimi-lsp run refactor examples/sample.py:4-9 --offline`."""


def average(values):
    total = 0
    for v in values:
        total = total + v
    # BUG: crashes on an empty list
    return total / len(values)


if __name__ == "__main__":
    print(average([1, 2, 3]))
