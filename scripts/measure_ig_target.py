"""What IG's auto-steps target buys in the token scores: path points and each target's scores against a
tight reference, on SmolLM2's chat prompts (the page's chat default explains the answer's content token).

    python scripts/measure_ig_target.py [--prompts 12] [--targets 0.05,0.03,0.02,0.01] [--reference 0.0005]

Settings: the recommended preset (mean baseline, context held, signed sum, logit), n_steps="auto" to each
target (at most 1000 points); the reference is the same rule to `--reference` (at most 2000 points). Per
prompt and target: path points, the completeness error reached, the token scores' relative L2 distance from
the reference's (all positions; held ones are 0 in both), Spearman's rho over the content tokens, whether
the top content token (by |score|) is the reference's, and how many of its top 3 are. Then a markdown
table: median and worst over the prompts. The figures are deterministic (no timing), so the machine's
load does not change them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.integrated_gradients import held_prefix, integrate_to_accuracy, path_endpoints  # noqa: E402
from attribution.ranks import spearman  # noqa: E402
from scripts.facts import COUNTRIES  # noqa: E402
from scripts.measure_auto_steps import problem  # noqa: E402
from scripts.measure_baselines import SMOLLM2  # noqa: E402


def token_scores(loaded, inputs, baseline, prefix, positions, targets, settings, target_error: float,
                 max_steps: int) -> tuple[int, float, np.ndarray]:
    """(path points, completeness error, signed token scores [seq]) of IG to `target_error`."""
    result = integrate_to_accuracy(loaded, inputs, baseline, positions, targets, None, settings.score,
                                   target_error=target_error, max_steps=max_steps, prefix=prefix)
    return result.n_points, float(result.relative_errors[0]), result.attributions[0].sum(dim=-1).double().cpu().numpy()


def top(scores: np.ndarray, content: np.ndarray, k: int) -> list[int]:
    return [int(index) for index in np.argsort(-np.abs(scores) * content, kind="stable")[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--targets", default="0.05,0.03,0.02,0.01")
    parser.add_argument("--reference", type=float, default=0.0005)
    arguments = parser.parse_args()
    targets = [float(value) for value in arguments.targets.split(",")]
    settings = attribution.PRESETS["recommended"]
    loaded = attribution.load_model(SMOLLM2, device="cpu")
    rows: dict[float, list[tuple]] = {target: [] for target in targets}
    for country in COUNTRIES[: arguments.prompts]:
        prompt = f"What is the Capital City of {country.name}?"
        ids, held, target_id, token = problem(
            loaded, prompt, dict(chat=True, max_new_tokens=16, target=attribution.ANSWER_TARGET), settings)
        positions, target_ids = torch.tensor([ids.numel() - 1]), torch.tensor([target_id])
        inputs, baseline = path_endpoints(loaded, ids, settings.baseline, held)
        prefix = held_prefix(loaded, inputs, baseline, positions)
        content = ~held.numpy()
        points, error, reference = token_scores(loaded, inputs, baseline, prefix, positions, target_ids, settings,
                                                arguments.reference, 2000)
        line = f"# {country.name} → {token!r}: reference {points} points, {error:.3%}"
        for target in targets:
            points, error, scores = token_scores(loaded, inputs, baseline, prefix, positions, target_ids, settings,
                                                 target, 1000)
            distance = float(np.linalg.norm(scores - reference) / np.linalg.norm(reference))
            rho = spearman(scores[content], reference[content])
            same_top = top(scores, content, 1) == top(reference, content, 1)
            shared_top3 = len(set(top(scores, content, 3)) & set(top(reference, content, 3)))
            rows[target].append((points, error, distance, rho, same_top, shared_top3))
            line += (f" | {target:.0%}: {points} points, {error:.2%}, L2 {distance:.3f}, rho {rho:.3f}, "
                     f"top {'same' if same_top else 'other'}, top-3 {shared_top3}/3")
        print(line, flush=True)
    print()
    print("| target | path points: median / worst | completeness reached: median / worst | "
          "scores' L2 from the reference: median / worst | rho: median / lowest | same top token | "
          "top-3 shared: fewest |")
    print("|---|---|---|---|---|---|---|")
    for target, measured in rows.items():
        points, errors, distances, rhos, same, shared = zip(*measured)
        print(f"| {target:.0%} | {statistics.median(points):g} / {max(points)} | {statistics.median(errors):.2%} / "
              f"{max(errors):.2%} | {statistics.median(distances):.3f} / {max(distances):.3f} | "
              f"{statistics.median(rhos):.3f} / {min(rhos):.3f} | {sum(same)}/{len(same)} | {min(shared)}/3 |")


if __name__ == "__main__":
    main()
