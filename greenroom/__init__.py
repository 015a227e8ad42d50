"""greenroom: an actor-model orchestrator for AI agent sessions."""
