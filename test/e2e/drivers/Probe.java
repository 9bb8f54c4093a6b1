// Probe connects with pgjdbc's defaults to the URL in its first argument and
// prints current_user. The e2e tests run it with the JDK's source launcher.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;

public class Probe {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0]);
             ResultSet r = c.createStatement().executeQuery("SELECT current_user")) {
            r.next();
            System.out.println(r.getString(1));
        }
    }
}
