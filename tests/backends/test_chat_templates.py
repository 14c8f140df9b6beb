"""Prompt rendering for GGUF models."""

from __future__ import annotations

from router.backends.chat_templates import FORMATS


def test_gemma_folds_the_system_prompt_into_the_first_user_turn() -> None:
    prompt = FORMATS["gemma"](
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
        ]
    )
    assert prompt.text == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert prompt.stop == ("<end_of_turn>",)


def test_gemma_with_only_a_system_message_still_says_it() -> None:
    assert "Be brief." in FORMATS["gemma"]([{"role": "system", "content": "Be brief."}]).text


def test_chatml_and_llama3_end_with_the_assistant_header() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert FORMATS["chatml"](messages).text.endswith("<|im_start|>assistant\n")
    assert FORMATS["llama-3"](messages).text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_a_gguf_template_never_yields_an_empty_stop_string() -> None:
    """llama.cpp renders control tokens as '' unless asked for them; an empty stop would end every answer."""
    from router.backends.chat_templates import gguf_template_renderer

    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    render = gguf_template_renderer({"tokenizer.chat_template": template}, eos="", bos="")
    prompt = render([{"role": "user", "content": "hi"}])
    assert "" not in prompt.stop
    with_eos = gguf_template_renderer({"tokenizer.chat_template": template}, eos="<|im_end|>", bos="")
    assert "<|im_end|>" in with_eos([{"role": "user", "content": "hi"}]).stop
