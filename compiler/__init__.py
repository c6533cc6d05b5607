"""Model config -> graph IR -> passes -> instructions -> Program."""
