"""lockgate's reference policy gateway: a real HTTP router in front of policy servers.

It implements the router contract (docs/router-contract.md) that lockgate drives, serves each
decision from the incumbent or the candidate policy server as the route says, enforces the
route's guardrails (blocked actions, caps, and actions held for human review on the control
plane's `/reviews`), takes late reward feedback, and exposes the metrics lockgate's example specs
query (docs/monitoring.md): Prometheus text on `/metrics`, one-number JSON on `/v1/stats`.

Run it with

    python -m gateway --port 8080 --control-port 8081 --control-token-file FILE
        --policy-uri http://127.0.0.1:8101 --policy-uri http://127.0.0.1:8102

(docs/router-contract.md, "The reference gateway's control plane": the data plane on `--port`;
routes, stats and metrics on `--control-port` behind the token), and serve a policy artifact with
`python -m gateway.policy_server --policy FILE --port 8101`.
"""
