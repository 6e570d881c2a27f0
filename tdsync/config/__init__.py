"""Config layer: settings from the environment, the deployment (local/production/distributed)
and credentials (URI rules, encryption at rest, masking, scrubbing). Imports only the domain.
"""
