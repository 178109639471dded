import json,sys
for l in sys.stdin:
    if not l.startswith("{"): print(l); continue
    r=json.loads(l); ph=r.pop('phases',{}); print({k:v for k,v in r.items()}); print({k:v for k,v in ph.items() if not k.startswith('local_search_') and not k.startswith('lagrangian_plan')})
