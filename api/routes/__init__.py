"""HTTP routes, one module per group; each exposes `routes(ctx: AppContext, ...) -> list[BaseRoute]`
(the live ones also take the service; metrics and reports a shared memo)."""
