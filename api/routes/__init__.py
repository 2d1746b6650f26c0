"""HTTP routes, one module per group; each exposes `routes(ctx: AppContext) -> list[BaseRoute]`."""
