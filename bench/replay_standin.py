"""Stand-in local, cloud and judge models that replay RouteLLM's recorded GSM8K answers.

One OpenAI-compatible server; the `model` of a request says who answers:
  mixtral   Mixtral-8x7B's recorded response to the prompt (the "local" model)
  gpt-4     GPT-4's recorded response (the "cloud" reference)
  judge     grades a grader prompt (`router/quality/judge.py`): each answer is looked up among the two
            recorded responses to that question and scored 10 if its recorded label says right, else 0;
            an answer that is neither is scored by its final number against the ground truth.
Usage counts the characters / 4, so the gateway prices every call. `GET /calls` counts calls per model.

    python -m bench.replay_standin --port P
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from router.classify.data import STRONG, WEAK
from router.quality.checks import final_number
from router.quality.judge import split_grader_prompt

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing" / "gsm8k"


def read_rows(folder: Path = DATA) -> list[dict[str, object]]:
    """The 1,319 GSM8K test prompts with both models' responses and labels, and the ground truth."""
    truth = {}
    for line in (folder / "gpt3_6b_175b_solutions.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        truth[" ".join(item["question"].split())] = float(item["ground_truth"].rsplit("A:", 1)[1].replace(",", ""))
    rows = []
    with (folder / "gsm8k_responses.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({
                "prompt": row["prompt"],
                "weak_right": row[WEAK] == "True",
                "strong_right": row[STRONG] == "True",
                "weak": row[f"{WEAK}_response"],
                "strong": row[f"{STRONG}_response"],
                "truth": truth.get(" ".join(row["prompt"].split())),
            })  # fmt: skip
    return rows


ROWS = read_rows() if DATA.exists() else []
BY_PROMPT = {" ".join(str(r["prompt"]).split()): r for r in ROWS}
calls: Counter[str] = Counter()


def _row(question: str) -> dict[str, object] | None:
    return BY_PROMPT.get(" ".join(question.split()))


def grade(row: dict[str, object], answer: str) -> int:
    for response, right in ((row["weak"], row["weak_right"]), (row["strong"], row["strong_right"])):
        if answer.strip() == str(response).strip():
            return 10 if right else 0
    number = final_number(answer)
    return 10 if number is not None and row["truth"] is not None and abs(number - float(row["truth"])) < 1e-6 else 0


def answer_for(model: str, messages: list[dict[str, str]]) -> str:
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    if model == "judge":
        parts = split_grader_prompt(last)
        row = _row(parts[0]) if parts else None
        if parts is None or row is None:
            return "I cannot grade this."
        return f"reference: {grade(row, parts[1])}\ncandidate: {grade(row, parts[2])}"
    row = _row(last)
    if row is None:
        return "I do not know that one."
    return str(row["strong"] if model.startswith("gpt-4") else row["weak"])


async def completions(request: Request) -> JSONResponse:
    body = await request.json()
    model = str(body.get("model", ""))
    calls[model] += 1
    messages = body.get("messages", [])
    text = answer_for(model, messages)
    prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
    usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text) // 4 + 1}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    })  # fmt: skip


async def call_counts(request: Request) -> JSONResponse:
    return JSONResponse(dict(calls))


async def models(request: Request) -> JSONResponse:
    names = ["mixtral", "gpt-4", "judge"]
    return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "replay"} for n in names]})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/calls", call_counts),
        Route("/v1/models", models),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
