"""The research agent: an agent_loop step that thinks one step at a time.

    bin/dagnats serve --worker examples/research-agent/worker.py
    bin/dagnats workflow register examples/research-agent/workflow.json
    bin/dagnats run start research-agent '{"question": "why is the sky blue?", "depth": 4}' --stream

`research-plan.json` asks the planner `plan-research` which angles to research, then runs
one such loop per angle and merges them (a dynamic DAG):

    bin/dagnats workflow register examples/research-agent/research-plan.json
    bin/dagnats run start research-plan '{"question": "tides", "angles": ["moon", "sun"]}' --watch

`think` is called once per iteration with the state the previous iteration returned (the
run input the first time). It adds one finding, and returns `worker.Continue(state)` until
it has `depth` of them; then it returns the answer, which completes the step. Each
iteration is a `step.iterated` event in `run events`; a worker killed mid-iteration loses
only that iteration, which runs again from the state before it. Each iteration also reports
its progress and streams its finding: `run watch RUN --stream` prints both as they come.
docs/step-types.md describes agent_loop, docs/handlers.md progress and streaming.
"""

import time
from typing import Any

from dagnats import worker

w = worker.Worker()  # DAGNATS_NATS_URL, else the running local serve, else :4222


@w.task("think")
def think(ctx: worker.TaskContext, state: dict[str, Any]) -> Any:
    """One step of thought: a finding more, or the answer once there are enough."""
    depth = int(state.get("depth", 3))
    ctx.progress((ctx.iteration or 1) / depth, f"thinking, step {ctx.iteration} of {depth}")
    time.sleep(float(state.get("think_s", 0.2)))  # asking a model, say
    ctx.stream(f"finding {ctx.iteration}\n")  # what a model would stream, token by token
    findings = [*state.get("findings", []), f"finding {ctx.iteration}"]
    if len(findings) < depth:
        return worker.Continue({**state, "findings": findings})
    return {"question": state.get("question"), "answer": "; ".join(findings),
            "iterations": ctx.iteration}


@w.task("plan-research")
def plan_research(ctx: worker.TaskContext, request: dict[str, Any]) -> list[dict[str, Any]]:
    """A planner: one `think` loop per angle of the question, then a summary of them all
    (the steps are decided here, at run time; research-plan.json runs them)."""
    angles = request.get("angles") or ["physics", "history"]
    loops = [{"id": f"research-{angle}", "type": "agent_loop", "task": "think",
              "config": {"max_iterations": 10}} for angle in angles]
    return [*loops, {"id": "merge", "task": "merge-findings",
                     "depends_on": [loop["id"] for loop in loops]}]


@w.task("merge-findings")
def merge_findings(ctx: worker.TaskContext, results: dict[str, Any]) -> dict[str, Any]:
    """The plan's last step: every angle's answer, in one."""
    return {"question": next(iter(results.values()))["question"],
            "answer": " / ".join(r["answer"] for _, r in sorted(results.items())),
            "iterations": sum(r["iterations"] for r in results.values())}


@w.task("summarize")
def summarize(ctx: worker.TaskContext, result: dict[str, Any]) -> str:
    """The answer in one line."""
    return f"{result['question']} -> {result['answer']} ({result['iterations']} iterations)"


if __name__ == "__main__":
    w.run()
