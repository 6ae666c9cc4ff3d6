"""Policy sets: load manifests, validate and compile each dialect into one IR."""
