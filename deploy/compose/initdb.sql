-- The state database (cluster state) and two target databases, one per connection.
CREATE DATABASE driftless;
CREATE DATABASE acme;
CREATE DATABASE globex;
