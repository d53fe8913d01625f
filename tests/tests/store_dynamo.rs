//! The store contract suite against the DynamoDB adapter, on moto server's real DynamoDB
//! protocol. Same tests, same assertions as the SQLite run.

leadrouter_tests::store_contract_tests!(leadrouter_tests::aws::fresh_dynamo());
