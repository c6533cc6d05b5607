"""Cycle engine, functional executor and reports; reads Program files only."""
