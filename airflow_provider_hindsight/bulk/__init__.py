"""One bulk run's stages: rows checked, sent by the engine, watched by the breaker, skipped, accounted for."""
