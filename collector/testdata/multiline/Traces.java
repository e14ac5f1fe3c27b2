import java.io.*;
import java.util.*;

public class Traces {
    static class Res implements AutoCloseable {
        public void close() throws IOException { throw new IOException("close failed"); }
    }
    static void db() throws IOException { throw new FileNotFoundException("/etc/app/db.conf (No such file or directory)"); }
    static void repo() { try { db(); } catch (IOException e) { throw new UncheckedIOException("load config", e); } }
    static void service() { try { repo(); } catch (RuntimeException e) { throw new IllegalStateException("service unavailable", e); } }
    public static void main(String[] args) throws Exception {
        System.err.println("2026-11-26 12:00:00.001 INFO  [main] app.Main - starting");
        try { service(); } catch (Exception e) { e.printStackTrace(); }
        System.err.println("2026-11-26 12:00:00.002 INFO  [main] app.Main - next request");
        try (Res r = new Res()) { throw new IllegalArgumentException("bad input"); } catch (Exception e) { e.printStackTrace(); }
        System.err.println("2026-11-26 12:00:00.003 INFO  [main] app.Main - done");
        Map<String,Integer> m = new HashMap<>();
        int x = m.get("missing");
    }
}
