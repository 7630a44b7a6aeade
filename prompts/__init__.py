"""Prompt templates (Jinja) and few-shot examples, installed as curate.prompts; see README.md here."""
