"""Lepton operator: reconciles LeptonTrainingJob, LeptonCompression and LeptonEndpoint."""
