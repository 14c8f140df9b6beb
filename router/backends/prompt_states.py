"""The in-process model's last hidden state at the end of each prompt, rendered exactly as the gateway
serves it: what a prompt-state probe is fitted on (`router states`, `classify/prompt_state.py`).

A batch job like labelling: states are appended in chunks of `CHUNK` to a folder, so an interrupted run
loses at most one chunk and a rerun does only what is missing. The model runs in embedding mode (a
context of its own beside the gateway's), one prompt at a time: prefill only, no answer is generated.
Beside each state the chunk keeps the log-probability of the token the model would write next (its most
likely one): with an answer start such as the cascade's letter aside ("The correct answer is"), that is
the letter's probability the gateway measures from the same step; and the log-probabilities of the four
option letters (" A" to " D") as that next token, so the whole of the letter's distribution can be studied.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from router.backends.chat_templates import Messages, renderer_for
from router.errors import ConfigError

CHUNK = 50
"""States per file written."""
OPTION_LETTERS = (" A", " B", " C", " D")
"""The next tokens whose log-probabilities are kept beside each state (each its first token in the model's
vocabulary: the whole letter in the default model's, as it follows "The correct answer is")."""
READING_FILE = "reading.json"
"""How a folder's prompts were rendered (see `collect_states`)."""


def read_states(folder: Path) -> dict[str, np.ndarray]:
    """Every state collected in `folder`, by prompt id."""
    return _read_column(folder, "states")


def read_next_token_logprobs(folder: Path) -> dict[str, float]:
    """The next token's log-probability (the most likely token's) after each prompt in `folder`, by prompt id
    (chunks written before it was kept have none)."""
    return {pid: float(value) for pid, value in _read_column(folder, "next_logprobs").items()}


def read_option_logprobs(folder: Path) -> dict[str, np.ndarray]:
    """The log-probabilities of `OPTION_LETTERS` as the next token after each prompt in `folder`, by prompt id
    (chunks written before they were kept have none)."""
    return _read_column(folder, "option_logprobs")


def _read_column(folder: Path, column: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(folder.glob("states-*.npz")):
        with np.load(path, allow_pickle=False) as chunk:
            if column in chunk:
                found.update(zip(chunk["ids"].tolist(), chunk[column], strict=True))
    return found


def next_token_logprobs(logits: np.ndarray, tokens: list[int]) -> tuple[float, np.ndarray]:
    """(log P(the most likely next token), log P(each of `tokens` is the next one)) under `logits`."""
    wide = logits.astype(np.float64)
    log_z = wide.max() + np.log(np.exp(wide - wide.max()).sum())
    return float(wide.max() - log_z), (wide[tokens] - log_z).astype(np.float32)


def served_messages(prompt: str, system: str | None) -> Messages:
    """A prompt as a client sends it: one user message, with the model's own system prompt if it has one."""
    user = {"role": "user", "content": prompt}
    return ({"role": "system", "content": system}, user) if system else (user,)


class StateReader:
    """The model in embedding mode: `state(messages)` is its last hidden state after reading the prompt."""

    def __init__(self, model_path: Path, chat_format: str = "gguf", n_ctx: int = 2048, threads: int = 0) -> None:
        import llama_cpp

        from router.tokens import quiet_stderr

        with quiet_stderr():
            self._llama = llama_cpp.Llama(
                str(model_path), n_ctx=n_ctx, n_threads=threads or None, n_batch=512, embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE, verbose=False,
            )  # fmt: skip
        self._render = renderer_for(self._llama, chat_format)
        self.width = self._llama.n_embd()
        self._n_ctx = n_ctx

    def tokens(self, text: str) -> list[int]:
        """`text`'s token ids in this model's vocabulary, as they follow other text (no BOS)."""
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False)

    def read(self, messages: Messages, answer_start: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(the last hidden state, the logits the next answer token would be sampled from), after the prompt
        and `answer_start`, the start of the model's answer (none: before its first token)."""
        import llama_cpp

        from router.tokens import quiet_stderr

        text = self._render(messages).text + answer_start
        tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)[: self._n_ctx - 1]
        self._llama.reset()  # each prompt alone: `eval` then drops every cached position
        with quiet_stderr():  # llama.cpp says on every call that embedding mode outputs every token
            self._llama.eval(tokens)
        ctx = self._llama._ctx.ctx
        state = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_ith(ctx, -1), shape=(self.width,))
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(self._llama.n_vocab(),))
        return state.astype(np.float32), logits.astype(np.float32)


def read_reading(folder: Path) -> dict[str, str] | None:
    """How the states in `folder` were read (`reading`: served, letter or aside; `answer_start`), if recorded."""
    path = folder / READING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def collect_states(
    reader: Any,
    prompts: Iterable[tuple[str, Messages]],
    folder: Path,
    answer_start: str = "",
    reading: str = "served",
    progress: TextIO = sys.stderr,
) -> int:
    """The state (after the prompt and `answer_start`) of every (id, messages) not yet in `folder`, with the
    next token's log-probability and the option letters', appended in chunks; returns how many were new.
    `reading` names how the prompts were rendered: a folder holds states of one reading only."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {"reading": reading, "answer_start": answer_start}
    recorded = read_reading(folder)
    if recorded is not None and recorded != wanted:
        raise ConfigError(f"{folder} holds states read as {recorded}, not {wanted}: use another folder")
    if recorded is None:
        if any(folder.glob("states-*.npz")):
            raise ConfigError(f"{folder} holds states of an unrecorded reading: use another folder")
        (folder / READING_FILE).write_text(json.dumps(wanted))
    done = set(read_states(folder))
    todo = [(pid, messages) for pid, messages in prompts if pid not in done]
    options = [reader.tokens(letter)[0] for letter in OPTION_LETTERS]
    ids: list[str] = []
    rows: list[np.ndarray] = []
    nexts: list[float] = []
    lettered: list[np.ndarray] = []
    started = time.monotonic()
    for n, (pid, messages) in enumerate(todo, 1):
        state, logits = reader.read(messages, answer_start)
        ids.append(pid)
        rows.append(state)
        top, letters = next_token_logprobs(logits, options)
        nexts.append(top)
        lettered.append(letters)
        if len(ids) == CHUNK or n == len(todo):
            np.savez(
                folder / f"states-{time.time_ns()}.npz", ids=np.array(ids), states=np.stack(rows),
                next_logprobs=np.array(nexts, dtype=np.float32), option_logprobs=np.stack(lettered),
            )  # fmt: skip
            ids, rows, nexts, lettered = [], [], [], []
            rate = n / max(1e-9, time.monotonic() - started)
            progress.write(f"{n}/{len(todo)} states, {rate:.2f}/s, ETA {(len(todo) - n) / rate / 60:.0f} min\n")
            progress.flush()
    return len(todo)
