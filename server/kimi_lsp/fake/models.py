"""The model line-up the fake serves (December 2026) and each model's request rules (thinking, sampling, effort).

Rules follow the reference's "Models and rules, December 2026"; every violation is a 400 `invalid_request_error`.
Retired ids are simply not listed, so a request naming one gets the usual model-not-found 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kimi_lsp.fake.faults import _invalid

RETIRED_MODEL_IDS = (
    "kimi-k2-thinking",
    "kimi-k2-thinking-turbo",
    "kimi-k2-turbo-preview",
    "kimi-k2-0905-preview",
    "kimi-k2-0711-preview",
    "kimi-latest",
)
REASONING_EFFORTS = ("low", "high", "max")


def _model_entry(
    model_id: str, context_length: int, *, image: bool = False, video: bool = False, reasoning: bool = False
) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 1769472000,
        "owned_by": "moonshot",
        "context_length": context_length,
        "supports_image_in": image,
        "supports_video_in": video,
        "supports_reasoning": reasoning,
    }


def default_models() -> list[dict[str, Any]]:
    """The `/models` list the fake serves unless told otherwise (a fresh copy each call)."""
    return [
        _model_entry("kimi-k2.5", 262144, image=True, video=True, reasoning=True),
        _model_entry("kimi-k2.6", 262144, image=True, video=True, reasoning=True),
        _model_entry("kimi-k2.7-code", 262144, image=True, video=True, reasoning=True),
        _model_entry("kimi-k2.7-code-highspeed", 262144, image=True, video=True, reasoning=True),
        _model_entry("kimi-k3", 1048576, image=True, reasoning=True),
        _model_entry("moonshot-v1-8k", 8192),
        _model_entry("moonshot-v1-32k", 32768),
        _model_entry("moonshot-v1-128k", 131072),
        _model_entry("moonshot-v1-8k-vision-preview", 8192, image=True),
        _model_entry("moonshot-v1-32k-vision-preview", 32768, image=True),
        _model_entry("moonshot-v1-128k-vision-preview", 131072, image=True),
        _model_entry("moonshot-v1-auto", 131072),
    ]


# ------------------------------------------------------------------------------------------------- rules

Thinking = Literal["switchable", "always", "never"]
# "by_thinking": k2.5's fixed values (temperature 1.0 thinking / 0.6 not, top_p 0.95); "unset": fixed values the
# request must not name at all; "range": temperature in [0, 1]; "free": not checked (custom ids).
Sampling = Literal["by_thinking", "unset", "range", "free"]


@dataclass(frozen=True)
class Rules:
    thinking: Thinking
    thinking_object: bool = False  # a `thinking: {type}` object is accepted
    keep: bool = False  # `thinking.keep: "all"` is accepted
    sampling: Sampling = "free"
    reasoning_effort: bool = False  # top-level `reasoning_effort` is accepted
    effort_hint: bool = False  # the thinking-object refusal points to reasoning_effort
    preserves: bool = False  # keeps earlier turns' reasoning always (as k2.6 does with thinking.keep "all")


_K2_SWITCHABLE = Rules("switchable", thinking_object=True, sampling="by_thinking")
_K27_CODE = Rules("always", thinking_object=True, keep=True, sampling="unset", preserves=True)
RULES: dict[str, Rules] = {
    "kimi-k2.5": _K2_SWITCHABLE,
    "kimi-k2.6": Rules("switchable", thinking_object=True, keep=True, sampling="by_thinking"),
    "kimi-k2.7-code": _K27_CODE,
    "kimi-k2.7-code-highspeed": _K27_CODE,
    "kimi-k3": Rules("always", sampling="unset", reasoning_effort=True, effort_hint=True, preserves=True),
}


def rules_for(entry: dict) -> Rules:
    """A model's rules: the table's for known ids, else from the /models entry (moonshot-v1, custom ids)."""
    model = str(entry.get("id", ""))
    if model in RULES:
        return RULES[model]
    if model.startswith("moonshot-v1"):
        return Rules("never", sampling="range")
    return Rules("always" if entry.get("supports_reasoning") else "never")


def check_model_rules(model: str, rules: Rules, body: dict) -> bool:
    """Raise the 400 for a request that breaks the model's rules; returns whether the model thinks."""
    thinks = _check_thinking(model, rules, body.get("thinking"))
    _check_effort(model, rules, body.get("reasoning_effort"))
    _check_sampling(model, rules, thinks, body)
    thinking = body.get("thinking")
    kept = isinstance(thinking, dict) and thinking.get("keep") == "all"
    if thinks and (rules.preserves or kept):  # preserved thinking: every earlier answer is replayed whole
        for index, message in enumerate(body.get("messages") or []):
            if (
                isinstance(message, dict)
                and message.get("role") == "assistant"
                and not message.get("partial")
                and not message.get("tool_calls")  # (those have their own message, in the chat checks)
                and not isinstance(message.get("reasoning_content"), str)
            ):
                raise _invalid(
                    f"thinking is enabled but reasoning_content is missing in assistant message at index {index}"
                )
    return thinks


def _check_thinking(model: str, rules: Rules, thinking: Any) -> bool:
    if thinking is None:
        return rules.thinking != "never"
    if not rules.thinking_object:
        hint = "; use reasoning_effort" if rules.effort_hint else ""
        raise _invalid(f'thinking is not supported by model "{model}"{hint}')
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise _invalid('invalid thinking: type must be "enabled" or "disabled"')
    if "keep" in thinking:
        if not rules.keep:
            raise _invalid(f'thinking.keep is not supported by model "{model}"')
        if thinking["keep"] != "all":
            raise _invalid('invalid thinking.keep: only "all" is allowed for this model')
    enabled = thinking["type"] == "enabled"
    if not enabled and rules.thinking == "always":
        raise _invalid(f'thinking cannot be disabled for model "{model}"')
    return enabled


def _check_effort(model: str, rules: Rules, effort: Any) -> None:
    if effort is None:
        return
    if not rules.reasoning_effort:
        raise _invalid(f'reasoning_effort is not supported by model "{model}"')
    if effort not in REASONING_EFFORTS:
        raise _invalid('invalid reasoning_effort: only "low", "high" or "max" is allowed for this model')


# Fixed on every model with fixed sampling, whatever it is told about thinking.
_FIXED_ALWAYS = {"n": 1, "presence_penalty": 0, "frequency_penalty": 0}


def _check_sampling(model: str, rules: Rules, thinks: bool, body: dict) -> None:
    if rules.sampling == "range":
        temperature = body.get("temperature")
        if temperature is not None and (
            isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1
        ):
            raise _invalid(f"invalid temperature: {temperature} is not in [0, 1]")
        return
    if rules.sampling == "free":
        return
    if rules.sampling == "unset":
        for name in ("temperature", "top_p"):
            if body.get(name) is not None:
                raise _invalid(f"invalid {name}: this model uses fixed sampling, do not set it")
        fixed: dict[str, float] = dict(_FIXED_ALWAYS)
    else:
        fixed = {"temperature": 1.0 if thinks else 0.6, "top_p": 0.95, **_FIXED_ALWAYS}
    for name, allowed in fixed.items():
        if body.get(name) is not None and body[name] != allowed:
            raise _invalid(f"invalid {name}: only {_number_text(allowed)} is allowed for this model")


def _number_text(value: float) -> str:
    return f"{value:g}"  # 1.0 -> "1", as in "only 1 is allowed"
