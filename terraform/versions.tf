terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

# Credentials, region overrides and endpoints come from the environment
# (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...), never from code.
provider "aws" {
  region = var.aws_region
}
