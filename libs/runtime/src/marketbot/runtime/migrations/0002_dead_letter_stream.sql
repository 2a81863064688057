-- Dead letters moved to the DEAD_LETTERS JetStream stream (MessageDeadLettered, with the
-- reason and the delivery history), where the gateway's admin API lists and replays them.
DROP TABLE IF EXISTS dead_letters;
