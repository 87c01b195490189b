"""Baselines every claim is compared with: TIP two-stage compositing, plain GLIGEN."""
