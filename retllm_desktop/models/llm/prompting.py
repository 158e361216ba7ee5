"""Prompt rendering for the fine stage: prompts.toml parts -> the model's chat format, with image markers.

No llama here (only llama-cpp-python's template strings): ``render_prompt`` returns the text the session
tokenises, exactly as the model's chat handler would render it, plus the image refs in marker order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...config import resource_path
from ...errors import ModelLoadError, RetllmError

DEFAULT_MARKER = "<__media__>"  # mtmd_default_marker(); used when rendering without the library


_PROMPT_CACHE: dict[Path, dict[str, Any]] = {}


def load_prompts(path: Path | None = None) -> dict[str, Any]:
    p = Path(path or resource_path("prompts.toml"))
    if p not in _PROMPT_CACHE:
        _PROMPT_CACHE[p] = tomllib.loads(p.read_text(encoding="utf-8"))
    return _PROMPT_CACHE[p]


def query_kind(text: str | None, query_image: object | None) -> str:
    if query_image is None:
        if not (text and text.strip()):
            raise RetllmError("The query needs text or a query image.")
        return "text"
    return "composed" if text and text.strip() else "image"


def build_parts(spec: Sequence[str], query: str | None, images: dict[str, Any]) -> list[dict[str, Any]]:
    """prompts.toml parts -> content list; images are {"type": "image", "ref": ...} placeholders."""
    out: list[dict[str, Any]] = []
    for part in spec:
        if part in ("<candidate>", "<query>"):
            ref = images.get(part[1:-1])
            if ref is None:
                raise RetllmError(f"Prompt needs a {part[1:-1]} image.")
            out.append({"type": "image", "ref": ref})
        else:
            out.append({"type": "text", "text": part.replace("{query}", (query or "").strip())})
    return out


def _placeholder(i: int) -> str:
    # Private-use characters: never whitespace, so templates that ``trim`` text parts (Gemma-3) keep them.
    return f"\ue000retllm-image-{i}\ue000"


def _dropped_turns(text: str, messages: Sequence[dict[str, Any]]) -> bool:
    """Whether a plain-string turn's text is missing from the rendered prompt."""
    return any(
        isinstance(m.get("content"), str) and m["content"].strip() and m["content"].strip() not in text
        for m in messages
    )


def _as_parts(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain-string contents as one text part, for templates that only loop over parts (SmolVLM)."""
    return [
        {**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m.get("content"), str) else m
        for m in messages
    ]


# LLaVA-1.5's own conversation format ("<system> USER: <image>\n<text> ASSISTANT:"), used instead of
# llama-cpp-python's Llava15ChatHandler template, which (under trim_blocks) glues "ASSISTANT:" to the
# question and moves every image of a turn before all of its text, separating "Query image"/"Candidate
# image" labels from their images in composed queries.
LLAVA15_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message.role == 'system' %}{{ message.content }}"
    "{% elif message.role == 'user' %}{{ ' USER: ' }}"
    "{% if message.content is string %}{{ message.content }}"
    "{% else %}{% for c in message.content %}"
    "{% if c.type == 'image_url' %}{{ c.image_url.url }}{{ '\n' }}"
    "{% elif c.type == 'text' %}{{ c.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% elif message.role == 'assistant' and message.content is not none %}"
    "{{ ' ASSISTANT: ' }}{{ message.content }}{{ '</s>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)


def render_prompt(
    handler: str,
    messages: Sequence[dict[str, Any]],
    *,
    chat_template: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    marker: str = DEFAULT_MARKER,
) -> tuple[str, list[Any]]:
    """Render messages the way llama-cpp-python's chat handler for ``handler`` does.

    ``messages``: ``{"role", "content"}`` where content is a string or a list of ``{"type": "text",
    "text"}`` / ``{"type": "image", "ref": obj}`` parts. Returns the prompt text with one media ``marker``
    per image and the image refs in the order their markers appear (the llava15 template moves all
    images of a message before its text, as the handler does).
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    refs: list[Any] = []

    def conv_part(part: dict[str, Any], image_as_text: bool) -> dict[str, Any]:
        if part["type"] != "image":
            return dict(part)
        refs.append(part["ref"])
        ph = _placeholder(len(refs) - 1)
        if image_as_text:  # MTMDChatHandler turns image parts into text parts holding the marker
            return {"type": "text", "text": ph}
        return {"type": "image_url", "image_url": {"url": ph}}

    def conv(msgs: Sequence[dict[str, Any]], image_as_text: bool) -> list[dict[str, Any]]:
        out = []
        for m in msgs:
            c = m["content"]
            if isinstance(c, list):
                c = [conv_part(p, image_as_text) for p in c]
            out.append({**m, "content": c})
        return out

    if handler in ("llava15", "qwen25vl"):
        from llama_cpp.llama_chat_format import Llava15ChatHandler, Qwen25VLChatHandler

        cls = Llava15ChatHandler if handler == "llava15" else Qwen25VLChatHandler
        msgs = conv(messages, image_as_text=False)
        has_system = any(m["role"] == "system" and m.get("content") for m in msgs)
        if not has_system and cls.DEFAULT_SYSTEM_MESSAGE is not None:
            msgs = [{"role": "system", "content": cls.DEFAULT_SYSTEM_MESSAGE}] + msgs
        chat_format = LLAVA15_TEMPLATE if handler == "llava15" else cls.CHAT_FORMAT
        # Deliberate deviation from llama-cpp-python's handler: Jinja drops a template's trailing newline
        # by default, so the handler's Qwen2.5-VL prompt ends "<|im_start|>assistant" without the "\n" the
        # model was trained with, and its first token is then often "\n" instead of True/False.
        template = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=handler == "qwen25vl"
        ).from_string(chat_format)
        text = template.render(
            messages=msgs, add_generation_prompt=True, eos_token=eos_token, bos_token=bos_token
        )
    elif handler == "gguf-template":
        import jinja2.ext
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not chat_template:
            raise ModelLoadError("The GGUF has no tokenizer.chat_template; set handler in mllm.json.")
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = Jinja2ChatFormatter.tojson

        def raise_exception(message: str) -> None:
            raise ValueError(message)

        template = env.from_string(chat_template)

        def render(msgs: list[dict[str, Any]]) -> str:
            return template.render(
                messages=msgs,
                add_generation_prompt=True,
                eos_token=eos_token,
                bos_token=bos_token,
                raise_exception=raise_exception,
                functions=None,
                function_call=None,
                tools=None,
                tool_choice=None,
                strftime_now=Jinja2ChatFormatter.strftime_now,
            )

        msgs = conv(messages, image_as_text=True)
        text = render(msgs)
        # Idefics3/SmolVLM templates iterate over content parts, so a plain-string turn (the first answer
        # before a second look) renders empty; give such templates that turn as one text part instead.
        if _dropped_turns(text, msgs):
            text = render(_as_parts(msgs))
            if _dropped_turns(text, msgs):
                raise RetllmError("The model's chat template drops plain-text turns from the prompt.")
    else:
        raise ValueError(f"unknown handler {handler!r}")

    positions = []
    for i in range(len(refs)):
        pos = text.find(_placeholder(i))
        if pos < 0:
            raise RetllmError(f"The {handler} chat template dropped an image from the prompt.")
        positions.append((pos, i))
    ordered = [refs[i] for _, i in sorted(positions)]
    for i in range(len(refs)):
        text = text.replace(_placeholder(i), marker)
    return text, ordered
