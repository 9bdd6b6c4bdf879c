"""ClientVault: the shared kit (settings, database, gRPC edge, policy, tokens, logging) and the operator CLI."""
