// Creates several Kafka topics in one JVM with TopicCommand's own code (TopicCommand.TopicService),
// since each `TopicCommand --create` call is a separate, slow JVM start. Run by ooda-local as a
// single-file source program:
//   java -cp '<libs>/*' CreateTopics.java <admin client properties> <bootstrap> <topic>:<partitions> ...
// Each topic is created with --if-not-exists and replication factor 1.
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.Optional;
import java.util.Properties;
import org.apache.kafka.tools.TopicCommand;

public class CreateTopics {
    public static void main(String[] args) {
        // Errors are reported here: the JDK 17 source launcher hides an exception thrown from
        // main behind an IllegalArgumentException ("0 > -n") while trimming its stack trace.
        try {
            run(args);
        } catch (Throwable t) {
            Throwable cause = t;
            while (cause.getCause() != null && cause instanceof java.util.concurrent.ExecutionException) {
                cause = cause.getCause();
            }
            System.err.println("CreateTopics failed: " + cause);
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: CreateTopics <client.properties> <bootstrap-server> <topic>:<partitions> ...");
            System.exit(2);
        }
        // The admin principal's SASL settings (like TopicCommand's --command-config).
        Properties client = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            client.load(in);
        }
        String bootstrap = args[1];
        try (TopicCommand.TopicService service =
                new TopicCommand.TopicService(client, Optional.of(bootstrap))) {
            for (int i = 2; i < args.length; i++) {
                int colon = args[i].lastIndexOf(':');
                String topic = args[i].substring(0, colon);
                String partitions = args[i].substring(colon + 1);
                TopicCommand.TopicCommandOptions options = new TopicCommand.TopicCommandOptions(new String[] {
                    "--bootstrap-server", bootstrap, "--create", "--if-not-exists",
                    "--topic", topic, "--partitions", partitions, "--replication-factor", "1"});
                options.checkArgs();
                service.createTopic(options);  // prints "Created topic <name>."
            }
        }
    }
}
