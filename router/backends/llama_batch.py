"""Continuous batching for the in-process model: one llama.cpp context decoding many sequences together.

On a CPU, generating one token for one sequence reads every weight of the model once; generating one
token for each of eight sequences in the same `llama_decode` reads them once too. So concurrent
requests are decoded together: each is a sequence (its own `seq_id` in one unified KV cache), requests
join and leave between steps, and every step sends one token per generating sequence plus as much of
the waiting prompts as the step's token budget (`step_tokens`) leaves room for. A long prompt is
therefore fed in chunks across steps and never holds everyone's next token back for its whole length.

A finished sequence's KV cells stay where they are until its slot is needed, so the next prompt that
starts the same way (the same system prompt, the same conversation one turn longer) copies that prefix
(`llama_memory_seq_cp`, then the rest dropped) instead of computing it again.

Each sequence has its own sampler chain (temperature, top-p, penalties, logit bias, a JSON grammar,
seed), stop strings, token limit, cancel flag and, when asked, the cascade's confidence meter, which
sees the logits of its own rows of the batch. Everything runs on one engine thread; results go back
through the callbacks a request brings.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from router.backends.batch_sequences import Generation, Slot
from router.backends.llama_sampling import Sampling, sampler_chain

log = logging.getLogger(__name__)
EXACT_ROWS = 4
"""Rows per decode call in exact mode: llama.cpp's CPU matmul computes up to this many rows each as alone."""


class BatchEngine:
    def __init__(
        self,
        model_path: Path,
        n_ctx: int,
        slots: int,
        n_threads: int,
        step_tokens: int,
        exact: bool = True,
        burst_prefill: str = "half",
    ) -> None:
        self.n_ctx = n_ctx
        self.exact = exact
        """Temperature 0 gives the same tokens batched as alone (see `_step`); off: mix everything in one call."""
        self.burst_prefill = burst_prefill
        """`half`: of several prompts waiting at once, a step prefills the oldest half (see `_prefilling`);
        `all`: as many as the step's budget holds."""
        self._admissions = 0
        self.slots = slots
        self.step_tokens = max(step_tokens, slots)
        self._inbox: queue.Queue[Generation | None] = queue.Queue()
        self._waiting: list[Generation] = []
        self._wake = threading.Event()
        self._stopped = False
        self.decode_steps = 0
        self.prefix_tokens_reused = 0
        self._load(model_path, n_threads)
        self._slots = [Slot(i) for i in range(slots)]
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()

    # -- set-up ------------------------------------------------------------------------------------

    def _load(self, model_path: Path, n_threads: int) -> None:
        import llama_cpp as ll

        self._ll = ll
        mparams = ll.llama_model_default_params()
        # Repacked weights (the CPU's "extra buffer types") switch kernels from 4 rows on: not exact.
        mparams.use_extra_bufts = not self.exact
        self._model = ll.llama_model_load_from_file(str(model_path).encode(), mparams)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {model_path}")
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = self.n_ctx * self.slots  # every sequence may use its whole window at once
        cparams.n_batch = cparams.n_ubatch = self.step_tokens
        cparams.n_seq_max = self.slots
        # A KV stream per sequence: its cells sit where they would sit if it ran alone, so attention adds
        # the same numbers in the same order and temperature 0 gives the same tokens, batched or not.
        # (One unified cache interleaves sequences' cells and changes the summation order.)
        cparams.kv_unified = False
        cparams.n_threads = cparams.n_threads_batch = n_threads
        cparams.no_perf = True
        # As llama-cpp-python's own contexts: flash attention's "auto" picks kernels this build's CPU
        # backend may not have (an illegal instruction on some x86 machines).
        cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = ll.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create the batched context")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(self._vocab)
        self._memory = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(self.step_tokens, 0, 1)
        self._piece = ctypes.create_string_buffer(256)

    def close(self) -> None:
        self._stopped = True
        self._inbox.put(None)
        self._wake.set()
        self._thread.join(timeout=30)
        ll = self._ll
        for slot in self._slots:
            if slot.sampler is not None:
                ll.llama_sampler_free(slot.sampler)
        ll.llama_batch_free(self._batch)
        ll.llama_free(self._ctx)
        ll.llama_model_free(self._model)

    # -- the outside ----------------------------------------------------------------------------------

    def submit(self, job: Generation) -> None:
        """Queue a generation; any thread. Its callbacks run on the engine thread."""
        self._inbox.put(job)
        self._wake.set()

    @property
    def active(self) -> int:
        return sum(slot.job is not None for slot in self._slots)

    # -- the engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped:
            self._take_inbox()
            if not self._waiting and not self.active:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self._step()
            except Exception as exc:  # a bug or llama.cpp refusing: fail the jobs in flight, keep serving
                log.exception("batched generation step failed")
                for slot in self._slots:
                    if slot.job is not None:
                        self._end(slot, "error")
                self._reset_cache(exc)

    def _take_inbox(self) -> None:
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._waiting.append(job)

    def _reset_cache(self, why: BaseException) -> None:
        self._ll.llama_memory_clear(self._memory, True)
        for slot in self._slots:
            slot.resident = []
        log.warning("batched context's cache cleared after: %s", why)

    def _admit(self) -> None:
        """Give waiting jobs free slots, reusing the longest cached prefix of each one's prompt."""
        self._waiting = [job for job in self._waiting if not self._dropped(job)]
        for slot in self._slots:
            if not self._waiting:
                return
            if slot.job is not None:
                continue
            job = self._waiting.pop(0)
            source, shared = self._best_prefix(job.tokens)
            shared = min(shared, len(job.tokens) - 1)  # the last prompt token is fed again: its logits start it
            if self.exact:  # whole chunks only: cells computed exactly as this prompt alone would compute them
                shared -= shared % self.step_tokens
            ll, mem = self._ll, self._memory
            if source is slot:
                ll.llama_memory_seq_rm(mem, slot.seq, shared, -1)
            else:
                ll.llama_memory_seq_rm(mem, slot.seq, -1, -1)
                if source is not None and shared > 0:
                    # Each sequence has its own KV stream; llama.cpp copies whole streams between them.
                    ll.llama_memory_seq_cp(mem, source.seq, slot.seq, -1, -1)
                    ll.llama_memory_seq_rm(mem, slot.seq, shared, -1)
            self.prefix_tokens_reused += max(shared, 0)
            if job.start is not None:
                job.start()
            self._admissions += 1
            slot.admitted = self._admissions
            slot.resident = job.tokens[: max(shared, 0)]
            slot.job, slot.fed = job, max(shared, 0)
            slot.pending, slot.text, slot.emitted = b"", "", 0
            slot.sampler = self._sampler(job.sampling, slot.sampler)

    def _dropped(self, job: Generation) -> bool:
        if job.cancel.is_set():
            job.finish("cancelled", 0)
            return True
        return False

    def _best_prefix(self, tokens: list[int]) -> tuple[Slot | None, int]:
        best: tuple[Slot | None, int] = (None, 0)
        for slot in self._slots:
            n = _common_prefix(slot.resident, tokens)  # cells a finished decode computed: safe to copy
            if n > best[1] or (n == best[1] and n > 0 and slot.job is None):
                best = (slot, n)
        return best

    def _sampler(self, s: Sampling, old: Any) -> Any:
        if old is not None:
            self._ll.llama_sampler_free(old)
        return sampler_chain(self._ll, self._vocab, self.n_vocab, s)

    def _step(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.cancel.is_set():
                self._end(slot, "cancelled")
        self._admit()
        # (token, position, slot, whether its logits sample the slot's next token) per row of a decode call.
        decode: list[tuple[int, int, Slot, bool]] = []
        for slot in self._slots:  # everyone's next token first: a long prompt must not stall them
            if slot.job is not None and slot.fed >= len(slot.job.tokens):
                token = slot.job.generated[-1]
                decode.append((token, len(slot.resident), slot, True))
                slot.resident.append(token)
        prefill: list[list[tuple[int, int, Slot, bool]]] = []
        # Not exact: a prompt's last token (whose logits pick the first answer token) is decoded in a call of
        # its own, as it is when the rest of the prompt is found in the cache. So the same prompt starts from
        # the same logits whether its prefix was cached or not, and a seed gives the same answer.
        finals: list[tuple[int, int, Slot, bool]] = []
        budget = self.step_tokens if self.exact else self.step_tokens - len(decode)
        for slot in self._prefilling():
            job = slot.job
            if job is None or budget <= 0:
                continue
            last = len(job.tokens) - 1
            if not self.exact and slot.fed == last:
                finals.append((job.tokens[last], last, slot, True))
                slot.fed, slot.resident = len(job.tokens), list(job.tokens)
                continue
            # Exact: chunks start at multiples of step_tokens, as the same prompt alone would be cut.
            end = (slot.fed // self.step_tokens + 1) * self.step_tokens if self.exact else slot.fed + budget
            end = min(end, len(job.tokens) if self.exact else last)
            prefill.append([(job.tokens[i], i, slot, i == last) for i in range(slot.fed, end)])
            budget -= end - slot.fed
            slot.fed = end
            slot.resident = job.tokens[:end]
            if self.exact:
                break  # one sequence's chunk per call, and one call of prompt a step
            if end == last and budget > 0:
                finals.append((job.tokens[last], last, slot, True))
                slot.fed, slot.resident = len(job.tokens), list(job.tokens)
                budget -= 1
        if self.exact:
            # llama.cpp's CPU kernels change with the number of rows in a call (here: from 8 rows on), and
            # with them the last bits of the logits; a call of a few rows, or of one sequence's prompt
            # chunk, computes each row as it would be computed alone.
            calls = [decode[i : i + EXACT_ROWS] for i in range(0, len(decode), EXACT_ROWS)] + prefill
        else:
            calls = [decode + [row for chunk in prefill for row in chunk], finals]
        for call in calls:
            if call:
                self._decode(call)

    def _prefilling(self) -> list[Slot]:
        """The sequences whose prompts this step may prefill: in exact mode all, in slot order; else oldest
        first and, with `burst_prefill: half`: of several prompts waiting at once, only the oldest half
        (at least one). Prefill is compute-bound here, so a burst of eight short prompts in one step gives
        every one its first token only when all eight are done (2.5 s on two cores); half of them per step
        gives the first four theirs after half that work, then the next two a step later, and so on. A
        long prompt is still fed in chunks across steps, oldest first."""
        waiting = [s for s in self._slots if s.job is not None and s.fed < len(s.job.tokens)]
        if self.exact:
            return waiting
        waiting.sort(key=lambda s: s.admitted)
        return waiting[: (len(waiting) + 1) // 2] if self.burst_prefill == "half" else waiting

    def _decode(self, rows: list[tuple[int, int, Slot, bool]]) -> None:
        batch = self._batch
        for n, (token, pos, slot, logits) in enumerate(rows):
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0], batch.logits[n] = slot.seq, int(logits)
        batch.n_tokens = len(rows)
        status = self._ll.llama_decode(self._ctx, batch)
        self.decode_steps += 1
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status} (the KV cache is full or the batch is invalid)")
        for n, (_, _, slot, logits) in enumerate(rows):
            if logits:
                self._sample(slot, n)

    def _sample(self, slot: Slot, row: int) -> None:
        ll, job = self._ll, slot.job
        assert job is not None
        if job.meter is not None:
            logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self._ctx, row), shape=(self.n_vocab,))
            job.meter(np.array(job.generated, dtype=np.intc), logits)
        token = ll.llama_sampler_sample(slot.sampler, self._ctx, row)
        if ll.llama_vocab_is_eog(self._vocab, token):
            self._flush(slot, final=True)
            self._end(slot, "stop", counted=len(job.generated))
            return
        if job.meter is not None:
            job.meter.sampled(token)
        job.generated.append(token)
        size = ll.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        slot.pending += self._piece.raw[: max(size, 0)]
        if self._flush(slot):
            self._end(slot, "stop", counted=len(job.generated))
        elif len(job.generated) >= job.max_tokens or len(slot.resident) + 1 >= self.n_ctx:
            self._flush(slot, final=True)
            self._end(slot, "length")

    def _flush(self, slot: Slot, final: bool = False) -> bool:
        """Decode what is whole of the pending bytes, emit what cannot be a stop's start; True at a stop."""
        job = slot.job
        assert job is not None
        text = slot.pending.decode("utf-8", errors="replace" if final else "ignore")
        if not final:
            # Keep an incomplete UTF-8 sequence's bytes for the next token.
            keep = len(slot.pending) - len(text.encode("utf-8"))
            slot.pending = slot.pending[len(slot.pending) - keep :] if keep else b""
        else:
            slot.pending = b""
        slot.text += text
        for stop in job.stops:
            if stop and (at := slot.text.find(stop, max(0, slot.emitted - len(stop)))) != -1:
                slot.text = slot.text[:at]
                self._emit(slot, len(slot.text))
                return True
        held = 0 if final else _longest_stop_prefix(slot.text, job.stops)
        self._emit(slot, len(slot.text) - held)
        return False

    def _emit(self, slot: Slot, upto: int) -> None:
        if upto > slot.emitted:
            assert slot.job is not None
            slot.job.emit(slot.text[slot.emitted : upto])
            slot.emitted = upto

    def _end(self, slot: Slot, reason: str, counted: int | None = None) -> None:
        job = slot.job
        assert job is not None
        slot.job = None
        tokens = len(job.generated) if counted is None else counted
        try:
            job.finish(reason, tokens)
        except Exception:  # a callback's failure must not stop the engine
            log.exception("batched generation: a finish callback failed")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x, y = np.asarray(a[:n]), np.asarray(b[:n])
    differ = np.flatnonzero(x != y)
    return int(differ[0]) if differ.size else n


def _longest_stop_prefix(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest
