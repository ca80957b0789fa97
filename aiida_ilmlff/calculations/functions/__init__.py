"""calculations/functions"""
