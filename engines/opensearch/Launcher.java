// OpenSearch 2.19 as one in-process node, for engines/up.
//
//   java <jvm opts> -cp <classpath of engines/opensearch/pom.xml> Launcher.java HOME
//
// HOME holds config/opensearch.yml and config/log4j2.properties (written by
// engines/opensearch/opensearch.sh), data/ and logs/. The node loads the
// modules below from the classpath (there is no modules/ folder of plugin zips)
// and runs until SIGTERM, when a shutdown hook closes it cleanly.
// Going through Node directly skips org.opensearch.bootstrap.Bootstrap, whose
// "can not run opensearch as root" check is what stops the shell launcher.
// Source-file mode (Java 11+): no compile step.

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

public class Launcher {
    // what a stock distribution ships as modules/ and we keep: network layer first
    static final String[] MODULES = {
        "org.opensearch.transport.Netty4Plugin",            // HTTP + transport
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "org.opensearch.index.reindex.ReindexPlugin",       // _reindex, _update_by_query, _delete_by_query
        "org.opensearch.painless.PainlessPlugin",
    };

    /** Node's plugin-list constructor is protected: a one-line subclass opens it. */
    static final class PlayPulseNode extends Node {
        PlayPulseNode(Environment env, List<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: Launcher.java HOME");
            System.exit(64);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Path config = home.resolve("config");
        Files.createDirectories(home.resolve("plugins"));
        Files.createDirectories(home.resolve("modules"));

        Settings input = Settings.builder().put("path.home", home.toString()).build();
        // reads config/opensearch.yml
        Environment env = InternalSettingsPreparer.prepareEnvironment(
                input, Collections.emptyMap(), config, () -> "playpulse-node");
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(env.settings()));  // for %node_name
        LogConfigurator.configure(env);  // reads config/log4j2.properties

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : MODULES) {
            plugins.add(Class.forName(name).asSubclass(Plugin.class));
        }
        Node node;
        try {
            node = new PlayPulseNode(env, plugins);
        } catch (Exception e) {
            e.printStackTrace();
            System.exit(1);
            return;
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "playpulse-shutdown"));
        try {
            node.start();
        } catch (Exception e) {
            e.printStackTrace();
            System.exit(1);  // the node's own threads would keep a failed JVM alive
        }
        System.out.println("playpulse launcher: OpenSearch node started, modules " + String.join(", ", MODULES));
        stopped.await();
    }
}
