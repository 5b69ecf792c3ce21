neo4j_start() { log "neo4j: not yet"; return 1; }; neo4j_query() { return 1; }
