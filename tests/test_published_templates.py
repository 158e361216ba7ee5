"""The stored published chat templates load and render the formats their models expect."""

import jinja2.sandbox
import pytest

from retllm_desktop.devtools import templates


def _render(name: str, messages, **kw) -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=False, lstrip_blocks=False, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(ValueError(m))
    return env.from_string(templates.load(name)).render(messages=messages, **kw)


def test_every_registry_mllm_has_a_template():
    from retllm_desktop.models.hub.registry import load_registry

    mllms = [e.name for e in load_registry().by_role("mllm")]
    assert mllms
    for name in mllms:
        assert name in templates.FOR_MODEL, name
        assert templates.load(name)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("smolvlm", "<|im_start|>User:<image>Is it a cat?<end_of_utterance>\nAssistant:"),
        (
            "qwen2.5-vl",
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|vision_end|>Is it a cat?<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "gemma-3",
            "<bos><start_of_turn>user\n<start_of_image>Is it a cat?<end_of_turn>\n<start_of_turn>model\n",
        ),
    ],
)
def test_user_turn_with_image(name, expected):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it a cat?"}]}]
    assert _render(name, msgs, add_generation_prompt=True, bos_token="<bos>") == expected


def test_smolvlm_plain_string_turn_renders_empty():
    """The caveat recorded in SOURCES.md: SmolVLM drops plain-string content."""
    msgs = [{"role": "assistant", "content": "True"}]
    assert _render("smolvlm", msgs) == "<|im_start|>Assistant: <end_of_utterance>\n"
