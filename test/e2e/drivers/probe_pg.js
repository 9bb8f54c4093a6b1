// Connects with node-postgres over TLS (checked against the CA in argv) and
// prints current_user; argv[7] "cb" turns on enableChannelBinding.
const { Client } = require('pg');
const fs = require('fs');
const [host, port, user, password, database, ca, cb] = process.argv.slice(2);
const client = new Client({
  host, port: Number(port), user, password, database,
  ssl: { ca: fs.readFileSync(ca), servername: 'reports-db.postgres.database.azure.com' },
  enableChannelBinding: cb === 'cb',
});
client.connect()
  .then(() => client.query('SELECT current_user'))
  .then((r) => { console.log(r.rows[0].current_user); return client.end(); })
  .catch((e) => { console.error(e.message); process.exit(1); });
