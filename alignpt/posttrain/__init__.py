"""Post-training stages: SFT, DPO, tampering and emergent-misalignment fine-tuning."""
