"""lengthrl.objectives"""
