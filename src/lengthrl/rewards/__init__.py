"""lengthrl.rewards"""
