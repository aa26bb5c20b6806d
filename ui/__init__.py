"""Streamlit helpers shared by the pages: workspace access, the current dataset, jobs and plots."""
