// Runs a Kafka tool's main class with its arguments read from stdin, one per line, so that
// secrets (StorageTool's --add-scram passwords) never appear on a command line, which every
// local user can read in /proc. Run by ooda-local as a single-file source program:
//   printf '%s\n' ARG... | java -cp '<libs>/*' StdinArgs.java <main class>
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

public class StdinArgs {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String[] toolArgs = in.lines().toArray(String[]::new);
        Class.forName(args[0]).getMethod("main", String[].class).invoke(null, (Object) toolArgs);
    }
}
