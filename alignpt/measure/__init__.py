"""The instrument: prompt formats, scoring backends, the harness and aggregation."""
