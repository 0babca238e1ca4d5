"""lengthrl.integrations"""
