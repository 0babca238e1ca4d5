"""lengthrl.analysis"""
