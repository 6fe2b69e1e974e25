"""A simulated world for lockgate's demo and tests: contexts, offers and real random rewards.

The reward law is known, so the true value of any policy is known too: the demo runs a real
rollout on real random outcomes, and estimators (offline evaluation, the canary's statistics) can
be checked against the truth.

- `world`: units, regions, the context distribution, the reward law, true values.
- `policy`: the artifact format the gateway serves, and guarded / exploring compositions.
- `artifacts`: the demo's policy artifacts (`simulator/artifacts/*.json`) and their generator.
- `scenarios`: healthy, regression, violations, broken, drifting and the guardrail scenarios
  (overuse-capped, review-rejected, harm-one-region, overspend): which artifacts are served, and
  the harm.
- `reviewer`: a scripted reviewer of the gateway's review proposals, judging by the world's truth.
- `driver`: paced, sticky traffic against a gateway's decide and feedback endpoints.
- `offline_log`: a JSON Lines log of the exploring incumbent, with its propensities.

Commands: `python -m simulator run|make-artifacts|write-log|values` (see `simulator.__main__`).
"""
