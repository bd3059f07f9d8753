"""HTTP plumbing shared by the three daemons: errors, auth, streaming, serving."""
