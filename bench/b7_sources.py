"""The two files B7's session works on: about 300 lines each of ordinary application code, Python and TypeScript.

Deterministic, and free of the phrases the fake treats as requests for tools (a `read <path>` phrase, "web
search"), so each action is one chat request.
"""

from __future__ import annotations

REGIONS = [
    ("north", "0.20", "4.90"),
    ("south", "0.18", "5.40"),
    ("east", "0.21", "4.20"),
    ("west", "0.19", "6.10"),
    ("central", "0.17", "3.80"),
]

PY_HEAD = '''"""Orders, invoices and the monthly revenue report for the shop back office."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Optional

CENT = Decimal("0.01")
FREE_SHIPPING_OVER = Decimal("75.00")


@dataclass(frozen=True)
class LineItem:
    sku: str
    title: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT, ROUND_HALF_UP)


@dataclass
class Order:
    order_id: str
    customer_id: str
    region: str
    placed: dt.date
    items: list[LineItem] = field(default_factory=list)
    coupon: Optional[str] = None
    refunded: Decimal = Decimal("0")

    def add(self, item: LineItem) -> None:
        if item.quantity <= 0:
            raise ValueError(f"{self.order_id}: quantity must be positive, got {item.quantity}")
        self.items.append(item)


@dataclass
class Customer:
    customer_id: str
    name: str
    email: str
    vip: bool = False
    orders: list[Order] = field(default_factory=list)


class OrderError(Exception):
    """An order that cannot be priced or shipped as it stands."""

'''

PY_BODY = '''
def parse_row(row: dict[str, str]) -> tuple[str, LineItem]:
    """One CSV row of the export: the order id and its line item."""
    try:
        quantity = int(row["quantity"])
        price = Decimal(row["unit_price"])
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise OrderError(f"bad row {row!r}: {exc}") from None
    return row["order_id"], LineItem(row["sku"], row.get("title", ""), quantity, price)


def load_orders(text: str, headers: dict[str, dict[str, str]]) -> dict[str, Order]:
    orders: dict[str, Order] = {}
    for row in csv.DictReader(io.StringIO(text)):
        order_id, item = parse_row(row)
        if order_id not in orders:
            head = headers.get(order_id)
            if head is None:
                raise OrderError(f"{order_id}: no order header")
            placed = dt.date.fromisoformat(head["placed"])
            orders[order_id] = Order(order_id, head["customer_id"], head["region"], placed, coupon=head.get("coupon"))
        orders[order_id].add(item)
    return orders


def subtotal(order: Order) -> Decimal:
    return sum((item.amount for item in order.items), Decimal("0"))


def apply_discount(amount: Decimal, pct: Decimal, cap: Optional[Decimal] = None) -> Decimal:
    if pct < 0 or pct > 100:
        raise OrderError(f"discount {pct}% is out of range")
    off = (amount * pct / 100).quantize(CENT, ROUND_HALF_UP)
    if cap is not None and off > cap:
        off = cap
    return amount - off


def coupon_percent(code: Optional[str], customer: Optional[Customer]) -> Decimal:
    if not code:
        return Decimal("10") if customer is not None and customer.vip else Decimal("0")
    table = {"WELCOME5": Decimal("5"), "SPRING15": Decimal("15"), "STAFF30": Decimal("30")}
    if code not in table:
        raise OrderError(f"unknown coupon {code}")
    return table[code]


def tax_for(region: str, amount: Decimal) -> Decimal:
    rate = TAX_RATES.get(region)
    if rate is None:
        raise OrderError(f"no tax rate for region {region!r}")
    return (amount * rate).quantize(CENT, ROUND_HALF_UP)


def shipping_cost(region: str, amount: Decimal, weight_kg: float) -> Decimal:
    if amount >= FREE_SHIPPING_OVER:
        return Decimal("0.00")
    base = SHIPPING_BASE[region]
    extra = Decimal(str(max(0.0, weight_kg - 2.0))) * Decimal("0.85")
    return (base + extra).quantize(CENT, ROUND_HALF_UP)


def order_total(order: Order, customer: Optional[Customer] = None, weight_kg: float = 1.0) -> Decimal:
    net = apply_discount(subtotal(order), coupon_percent(order.coupon, customer), cap=Decimal("50.00"))
    total = net + tax_for(order.region, net) + shipping_cost(order.region, net, weight_kg)
    return total - order.refunded


def group_by_customer(orders: Iterable[Order]) -> dict[str, list[Order]]:
    grouped: dict[str, list[Order]] = defaultdict(list)
    for order in orders:
        grouped[order.customer_id].append(order)
    for bucket in grouped.values():
        bucket.sort(key=lambda o: (o.placed, o.order_id))
    return dict(grouped)


def average_order_value(orders: list[Order]) -> Decimal:
    total = sum((order_total(o) for o in orders), Decimal("0"))
    return (total / len(orders)).quantize(CENT, ROUND_HALF_UP)  # BUG: divides by zero when there are no orders


def top_customers(orders: Iterable[Order], n: int = 5) -> list[tuple[str, Decimal]]:
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        spent[order.customer_id] += order_total(order)
    ranked = sorted(spent.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:n]


def format_money(amount: Decimal, currency: str = "EUR") -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount).quantize(CENT, ROUND_HALF_UP) * 100, 100)
    grouped = f"{int(whole):,}".replace(",", " ")
    return f"{sign}{grouped}.{int(cents):02d} {currency}"


def format_invoice(order: Order, customer: Customer) -> str:
    lines = [f"Invoice {order.order_id}", f"{customer.name} <{customer.email}>", f"Placed {order.placed:%d %b %Y}", ""]
    for item in order.items:
        lines.append(f"{item.quantity:>3} x {item.title[:40]:<40} {format_money(item.amount):>14}")
    net = subtotal(order)
    lines.append(f"{'Subtotal':<46} {format_money(net):>14}")
    lines.append(f"{'Tax':<46} {format_money(tax_for(order.region, net)):>14}")
    lines.append(f"{'Total':<46} {format_money(order_total(order, customer)):>14}")
    return "\\n".join(lines)


def validate_order(order: Order) -> list[str]:
    problems = []
    if not order.items:
        problems.append("no items")
    if order.region not in TAX_RATES:
        problems.append(f"unknown region {order.region}")
    seen: set[str] = set()
    for item in order.items:
        if item.sku in seen:
            problems.append(f"duplicate sku {item.sku}")
        seen.add(item.sku)
        if item.unit_price < 0:
            problems.append(f"negative price for {item.sku}")
    return problems


def merge_orders(first: Order, second: Order) -> Order:
    if first.customer_id != second.customer_id:
        raise OrderError("orders of different customers cannot be merged")
    merged = Order(first.order_id, first.customer_id, first.region, min(first.placed, second.placed))
    by_sku: dict[str, LineItem] = {}
    for item in first.items + second.items:
        old = by_sku.get(item.sku)
        by_sku[item.sku] = item if old is None else LineItem(item.sku, item.title, old.quantity + item.quantity, item.unit_price)
    merged.items = list(by_sku.values())
    return merged


def refund(order: Order, amount: Decimal, reason: str) -> Order:
    if amount <= 0:
        raise OrderError("a refund must be positive")
    if order.refunded + amount > order_total(order):
        raise OrderError(f"{order.order_id}: refund exceeds the order total ({reason})")
    order.refunded += amount
    return order


def export_csv(orders: Iterable[Order]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["order_id", "customer_id", "region", "placed", "sku", "quantity", "unit_price"])
    for order in orders:
        for item in order.items:
            writer.writerow(
                [order.order_id, order.customer_id, order.region, order.placed.isoformat(), item.sku, item.quantity, item.unit_price]
            )
    return out.getvalue()


def late_orders(orders: Iterable[Order], today: dt.date, days: int = 3) -> list[Order]:
    """Orders placed more than `days` days ago that still have items and no refund."""
    limit = today - dt.timedelta(days=days)
    return [o for o in orders if o.placed < limit and o.items and not o.refunded]


def customer_summary(customer: Customer) -> dict[str, object]:
    totals = [order_total(o, customer) for o in customer.orders]
    return {
        "customer": customer.customer_id,
        "orders": len(totals),
        "spent": format_money(sum(totals, Decimal("0"))),
        "largest": format_money(max(totals)) if totals else None,
        "vip": customer.vip,
    }


def monthly_revenue(orders: Iterable[Order]) -> dict[str, Decimal]:
    months: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        months[f"{order.placed:%Y-%m}"] += order_total(order)
    return dict(sorted(months.items()))
'''


def python_source() -> str:
    rates = "\n".join(f'    "{r}": Decimal("{t}"),' for r, t, _ in REGIONS)
    base = "\n".join(f'    "{r}": Decimal("{s}"),' for r, _, s in REGIONS)
    tables = f"TAX_RATES = {{\n{rates}\n}}\nSHIPPING_BASE = {{\n{base}\n}}\n\n"
    reports = []
    for region, _, _ in REGIONS:
        reports.append(
            f'''

def {region}_report(orders: Iterable[Order]) -> str:
    mine = [o for o in orders if o.region == "{region}"]
    if not mine:
        return "{region}: no orders"
    revenue = sum((order_total(o) for o in mine), Decimal("0"))
    return f"{region}: {{len(mine)}} orders, {{format_money(revenue)}}"'''
        )
    return PY_HEAD + tables + PY_BODY + "".join(reports) + "\n"


TS_HEAD = """// A small job queue for the notification service: retries with backoff, batches, and a dead-letter list.

export type JobState = "queued" | "running" | "done" | "failed" | "dead";

export interface Job {
  id: string;
  kind: string;
  payload: Record<string, unknown>;
  attempts: number;
  state: JobState;
  runAfter: number;
  lastError?: string;
}

export interface QueueOptions {
  concurrency: number;
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  now?: () => number;
}

export type Handler = (job: Job) => Promise<void>;

export class QueueError extends Error {
  constructor(message: string, readonly jobId?: string) {
    super(message);
    this.name = "QueueError";
  }
}

export function backoff(attempt: number, baseMs: number, maxMs: number, jitter: number = 0.2): number {
  const raw = baseMs * 2 ** Math.max(0, attempt - 1);
  const capped = Math.min(raw, maxMs);
  const spread = capped * jitter;
  return Math.round(capped - spread + Math.random() * spread * 2);
}

export function parseJob(line: string): Job {
  const data = JSON.parse(line) as Partial<Job>;
  if (typeof data.id !== "string" || typeof data.kind !== "string") {
    throw new QueueError(`not a job: ${line.slice(0, 80)}`);
  }
  return {
    id: data.id,
    kind: data.kind,
    payload: data.payload ?? {},
    attempts: data.attempts ?? 0,
    state: "queued",
    runAfter: data.runAfter ?? 0, // BUG: a job restored as running is queued again without its attempts
  };
}

export class RetryPolicy {
  constructor(private readonly options: QueueOptions) {}

  shouldRetry(job: Job, error: unknown): boolean {
    if (job.attempts >= this.options.maxAttempts) {
      return false;
    }
    if (error instanceof QueueError) {
      return false;
    }
    return true;
  }

  delayFor(job: Job): number {
    return backoff(job.attempts, this.options.baseDelayMs, this.options.maxDelayMs);
  }
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly handlers = new Map<string, Handler>();
  private readonly dead: Job[] = [];
  private running = 0;
  private readonly policy: RetryPolicy;
  private readonly now: () => number;

  constructor(private readonly options: QueueOptions) {
    this.policy = new RetryPolicy(options);
    this.now = options.now ?? Date.now;
  }

  register(kind: string, handler: Handler): void {
    if (this.handlers.has(kind)) {
      throw new QueueError(`a handler for ${kind} is already registered`);
    }
    this.handlers.set(kind, handler);
  }

  enqueue(kind: string, payload: Record<string, unknown>, delayMs: number = 0): Job {
    const id = `${kind}-${this.jobs.size + 1}-${this.now().toString(36)}`;
    const job: Job = { id, kind, payload, attempts: 0, state: "queued", runAfter: this.now() + delayMs };
    this.jobs.set(id, job);
    return job;
  }

  due(): Job[] {
    const now = this.now();
    return [...this.jobs.values()]
      .filter((job) => job.state === "queued" && job.runAfter <= now)
      .sort((a, b) => a.runAfter - b.runAfter || a.id.localeCompare(b.id));
  }

  async runOne(job: Job): Promise<void> {
    const handler = this.handlers.get(job.kind);
    if (!handler) {
      this.bury(job, `no handler for ${job.kind}`);
      return;
    }
    job.state = "running";
    job.attempts += 1;
    this.running += 1;
    try {
      await handler(job);
      job.state = "done";
    } catch (error) {
      job.lastError = error instanceof Error ? error.message : String(error);
      if (this.policy.shouldRetry(job, error)) {
        job.state = "queued";
        job.runAfter = this.now() + this.policy.delayFor(job);
      } else {
        this.bury(job, job.lastError);
      }
    } finally {
      this.running -= 1;
    }
  }

  async processBatch(items: Job[]): Promise<number> {
    let done = 0;
    const slots = Math.max(1, this.options.concurrency - this.running);
    for (let i = 0; i < items.length; i += slots) {
      const chunk = items.slice(i, i + slots);
      await Promise.all(chunk.map((job) => this.runOne(job)));
      done += chunk.filter((job) => job.state === "done").length;
    }
    return done;
  }

  async drain(maxRounds: number = 100): Promise<number> {
    let total = 0;
    for (let round = 0; round < maxRounds; round++) {
      const batch = this.due();
      if (batch.length === 0) {
        break;
      }
      total += await this.processBatch(batch);
    }
    return total;
  }

  bury(job: Job, reason: string): void {
    job.state = "dead";
    job.lastError = reason;
    this.dead.push(job);
  }

  deadLetters(): readonly Job[] {
    return this.dead;
  }

  stats(): Record<JobState, number> {
    const counts: Record<JobState, number> = { queued: 0, running: 0, done: 0, failed: 0, dead: 0 };
    for (const job of this.jobs.values()) {
      counts[job.state] += 1;
    }
    return counts;
  }

  snapshot(): string {
    return [...this.jobs.values()].map((job) => JSON.stringify(job)).join("\\n");
  }

  restore(text: string): number {
    let count = 0;
    for (const line of text.split("\\n")) {
      if (!line.trim()) {
        continue;
      }
      const job = parseJob(line);
      this.jobs.set(job.id, job);
      count += 1;
    }
    return count;
  }
}
"""

CHANNELS = ["email", "sms", "push", "webhook", "slack"]


def typescript_source() -> str:
    handlers = []
    for name in CHANNELS:
        cap = name.capitalize()
        handlers.append(
            f"""
export interface {cap}Payload {{
  to: string;
  template: string;
  vars?: Record<string, string>;
}}

export function make{cap}Handler(send: (p: {cap}Payload) => Promise<number>): Handler {{
  return async (job: Job) => {{
    const payload = job.payload as unknown as {cap}Payload;
    if (!payload.to) {{
      throw new QueueError("{name} job without a recipient", job.id);
    }}
    const status = await send(payload);
    if (status >= 500) {{
      throw new Error(`{name} gateway answered ${{status}}`);
    }}
    if (status >= 400) {{
      throw new QueueError(`{name} rejected ${{payload.to}}: ${{status}}`, job.id);
    }}
  }};
}}
"""
        )
    return TS_HEAD + "".join(handlers)
