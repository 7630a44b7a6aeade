"""The dataset card template, installed as curate.data_cards; see README.md here."""
