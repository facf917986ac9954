"""Retention: which archives ``collector purge`` deletes, by age and by resolution."""
