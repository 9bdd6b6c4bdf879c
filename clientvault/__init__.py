"""ClientVault's kit, the bottom layer every process imports: settings, database, gRPC edge and a service's
start-up, policy, tokens, revocation, the request context, the AUDIT stream contract, retrying, logging. It
imports nothing of this repository above it (ARCHITECTURE.md)."""
