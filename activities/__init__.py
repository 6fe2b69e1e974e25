"""Every side effect of lockgate: routing, monitoring checks, and their backends."""
