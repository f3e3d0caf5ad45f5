"""S3-compatible object storage over boto3: streaming upload/download and key layout."""
