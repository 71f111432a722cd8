"""The two-way exchange (审批与监管信息双向推送): correlation and licence effects, 并联审批, reconciliation, watchdogs.

The pieces are modules of their own; the gateway runs them through :class:`ExchangeService`
(``gateway.exchange.service``), wired in ``gateway.app`` with a few small hooks:

- ``correlate`` — what a record says about its case, licence and subject, and how a supervision result
  that names only a licence (or a credit code) finds its case;
- ``parallel`` — 并联审批: dispatch to every department at once, who answered, who is late, the combined result;
- ``reconcile`` — 对账 with a counterpart, per period, through an adapter's optional SDK methods;
- ``watchdogs`` — "records expected by HH:MM" and "no contact for N minutes", and last contact;
- ``follower`` — the follower that applies them to committed records behind a persisted watermark.
"""
