"""lengthrl.eval"""
