from .apischemas import ApiEndpoint, ApiField, ApiModel
from .catalog import Category, Integration
from .devices import Device
from .instances import Instance, PendingUpgrade, ResourceBinding
from .media import ApiSchema, Attachment
from .organizations import Invitation, Membership, Organization
from .runs import HandlerRun
from .storage import CacheEntry, ContainerEntry, StorageUsage
from .tokens import ApiToken
from .versions import IntegrationVersion

__all__ = [
    "ApiEndpoint",
    "ApiField",
    "ApiModel",
    "ApiSchema",
    "ApiToken",
    "Attachment",
    "CacheEntry",
    "Category",
    "ContainerEntry",
    "Device",
    "HandlerRun",
    "Instance",
    "Integration",
    "IntegrationVersion",
    "Invitation",
    "Membership",
    "Organization",
    "PendingUpgrade",
    "ResourceBinding",
    "StorageUsage",
]
