"""Channel drivers: one module (or small package) per channel kind."""
