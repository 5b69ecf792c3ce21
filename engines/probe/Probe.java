// Readiness probe for engines/up: runs one real query and prints its answer.
//
//   java -cp <probe classpath> Probe.java cql  HOST PORT DEADLINE_S [WATCH_PID]
//   java -cp <probe classpath> Probe.java bolt HOST PORT DEADLINE_S [WATCH_PID]
//
// cql : SELECT release_version FROM system.local   (DataStax/Apache Java driver 4.x)
// bolt: RETURN 1                                   (Neo4j Java driver 5.x, no auth)
//
// Retries once a second until the query answers (exit 0), the deadline passes
// (exit 2) or WATCH_PID, the server's pid, is gone (exit 3). Source-file mode
// (Java 11+): no compile step, the classpath comes from engines/probe/pom.xml.

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.cql.Row;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.neo4j.driver.AuthTokens;
import org.neo4j.driver.Config;
import org.neo4j.driver.Driver;
import org.neo4j.driver.GraphDatabase;
import org.neo4j.driver.Result;
import org.neo4j.driver.Session;

public class Probe {
    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: Probe.java cql|bolt HOST PORT DEADLINE_S [WATCH_PID]");
            System.exit(64);
        }
        String kind = args[0];
        String host = args[1];
        int port = Integer.parseInt(args[2]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[3]));
        Long watch = args.length > 4 ? Long.parseLong(args[4]) : null;
        String last = "no attempt";
        while (true) {
            try {
                String answer = kind.equals("cql") ? cql(host, port) : bolt(host, port);
                System.out.println(answer);
                System.exit(0);
            } catch (Exception e) {
                last = e.toString();
            }
            if (watch != null && ProcessHandle.of(watch).map(p -> !p.isAlive()).orElse(true)) {
                System.err.println("probe: server pid " + watch + " is gone; last error: " + last);
                System.exit(3);
            }
            if (System.nanoTime() > deadline) {
                System.err.println("probe: deadline passed; last error: " + last);
                System.exit(2);
            }
            Thread.sleep(1000);
        }
    }

    static String cql(String host, int port) {
        DriverConfigLoader cfg = DriverConfigLoader.programmaticBuilder()
                .withDuration(DefaultDriverOption.CONNECTION_CONNECT_TIMEOUT, Duration.ofSeconds(5))
                .withDuration(DefaultDriverOption.CONNECTION_INIT_QUERY_TIMEOUT, Duration.ofSeconds(10))
                .withDuration(DefaultDriverOption.REQUEST_TIMEOUT, Duration.ofSeconds(10))
                .withDuration(DefaultDriverOption.CONTROL_CONNECTION_TIMEOUT, Duration.ofSeconds(10))
                .withBoolean(DefaultDriverOption.METADATA_SCHEMA_ENABLED, false)
                .withBoolean(DefaultDriverOption.METADATA_TOKEN_MAP_ENABLED, false)
                .build();
        try (CqlSession s = CqlSession.builder()
                .addContactPoint(new InetSocketAddress(host, port))
                .withLocalDatacenter("datacenter1")
                .withConfigLoader(cfg)
                .build()) {
            Row r = s.execute("SELECT release_version FROM system.local").one();
            return "cql " + host + ":" + port + " release_version=" + r.getString("release_version");
        }
    }

    static String bolt(String host, int port) {
        Config cfg = Config.builder()
                .withConnectionTimeout(5, TimeUnit.SECONDS)
                .withoutEncryption()
                .build();
        try (Driver d = GraphDatabase.driver("bolt://" + host + ":" + port, AuthTokens.none(), cfg);
             Session s = d.session()) {
            Result r = s.run("RETURN 1 AS one");
            long one = r.single().get("one").asLong();
            String agent = r.consume().server().agent();
            return "bolt " + host + ":" + port + " RETURN 1 -> " + one + " (" + agent + ")";
        }
    }
}
