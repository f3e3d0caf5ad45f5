"""The custom resources as typed Python: defaults, validation and CRD generation."""
