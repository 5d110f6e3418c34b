"""The demo organization's fixed material: its customers (accounts with their domains and
owners in turn), the names its contacts and leads are made of, and what their deals, cases,
tasks and meetings are called. :mod:`server.demo` builds the records from these.
"""
from __future__ import annotations

# name, domain, industry, city, country, parent account's name
ACCOUNTS = [
    ("Fabrikam Inc", "fabrikam.example", "Manufacturing", "Seattle", "United States", None),
    ("Fabrikam Europe", "eu.fabrikam.example", "Manufacturing", "Munich", "Germany", "Fabrikam Inc"),
    ("Fabrikam Asia Pacific", "apac.fabrikam.example", "Manufacturing", "Singapore", "Singapore",
     "Fabrikam Inc"),
    ("Northwind Traders", "northwindtraders.example", "Wholesale", "Portland", "United States", None),
    ("Adventure Works Cycles", "adventure-works.example", "Retail", "Bothell", "United States", None),
    ("Adventure Works Outlet", "outlet.adventure-works.example", "Retail", "Denver",
     "United States", "Adventure Works Cycles"),
    ("Tailspin Toys", "tailspintoys.example", "Consumer goods", "Chicago", "United States", None),
    ("Wide World Importers", "wideworldimporters.example", "Logistics", "San Francisco",
     "United States", None),
    ("Litware Inc", "litware.example", "Software", "Boston", "United States", None),
    ("Proseware Inc", "proseware.example", "Software", "Austin", "United States", None),
    ("Woodgrove Bank", "woodgrovebank.example", "Financial services", "New York",
     "United States", None),
    ("Woodgrove Insurance", "insurance.woodgrovebank.example", "Insurance", "Hartford",
     "United States", "Woodgrove Bank"),
    ("Alpine Ski House", "alpineskihouse.example", "Hospitality", "Aspen", "United States", None),
    ("Coho Winery", "cohowinery.example", "Food and beverage", "Napa", "United States", None),
    ("Lucerne Publishing", "lucernepublishing.example", "Media", "London", "United Kingdom", None),
    ("Margie's Travel", "margiestravel.example", "Travel", "Miami", "United States", None),
    ("Trey Research", "treyresearch.example", "Research", "Cambridge", "United Kingdom", None),
    ("Wingtip Toys", "wingtiptoys.example", "Consumer goods", "Toronto", "Canada", None),
    ("Blue Yonder Airlines", "blueyonderairlines.example", "Transportation", "Dallas",
     "United States", None),
    ("Fourth Coffee", "fourthcoffee.example", "Food and beverage", "Vancouver", "Canada", None),
    ("Humongous Insurance", "humongousinsurance.example", "Insurance", "Des Moines",
     "United States", None),
    ("City Power & Light", "cpandl.example", "Utilities", "Atlanta", "United States", None),
    ("Consolidated Messenger", "consolidatedmessenger.example", "Logistics", "Newark",
     "United States", None),
    ("Southridge Video", "southridgevideo.example", "Media", "Los Angeles", "United States", None),
    ("Relecloud", "relecloud.example", "Software", "Dublin", "Ireland", None),
    ("Bellows College", "bellowscollege.example", "Education", "Albany", "United States", None),
    ("VanArsdel Ltd", "vanarsdel.example", "Manufacturing", "Rotterdam", "Netherlands", None),
    ("A. Datum Corporation", "adatum.example", "Consulting", "Washington", "United States", None),
    ("Lamna Healthcare", "lamnahealthcare.example", "Healthcare", "Minneapolis",
     "United States", None),
    ("Munson's Pickles and Preserves", "munsonspickles.example", "Food and beverage",
     "Milwaukee", "United States", None),
    ("Nod Publishers", "nodpublishers.example", "Media", "Edinburgh", "United Kingdom", None),
    ("Graphic Design Institute", "graphicdesigninstitute.example", "Education", "Sydney",
     "Australia", None),
    ("School of Fine Art", "fineartschool.example", "Education", "Paris", "France", None),
    ("Best For You Organics", "bestforyouorganics.example", "Retail", "Boulder",
     "United States", None),
    ("Kestrel Analytics", "kestrel-analytics.example", "Software", "Raleigh", "United States", None),
    ("Bluewater Marine Supply", "bluewatermarine.example", "Wholesale", "San Diego",
     "United States", None),
    ("Orchard Hill Foods", "orchardhillfoods.example", "Food and beverage", "Yakima",
     "United States", None),
    ("Redwood Ridge Construction", "redwoodridge.example", "Construction", "Sacramento",
     "United States", None),
    ("Silverline Medical", "silverlinemedical.example", "Healthcare", "Boston", "United States",
     None),
    ("Northpeak Outfitters", "northpeak.example", "Retail", "Salt Lake City", "United States", None),
    ("Granite Falls Energy", "granitefallsenergy.example", "Energy", "Calgary", "Canada", None),
    ("Lakeshore Logistics", "lakeshorelogistics.example", "Logistics", "Cleveland",
     "United States", None),
    ("Harbor Point Hotels", "harborpointhotels.example", "Hospitality", "Charleston",
     "United States", None),
    ("Meridian Dental Group", "meridiandental.example", "Healthcare", "Phoenix", "United States",
     None),
    ("Summit Peak Insurance", "summitpeak.example", "Insurance", "Denver", "United States", None),
    ("Brightwater Schools", "brightwaterschools.example", "Education", "Madison", "United States",
     None),
    ("Ironbridge Engineering", "ironbridge.example", "Engineering", "Pittsburgh", "United States",
     None),
    ("Clearview Optics", "clearviewoptics.example", "Manufacturing", "Rochester", "United States",
     None),
    ("Oakmont Legal Partners", "oakmontlegal.example", "Legal", "Philadelphia", "United States",
     None),
    ("Riverbend Credit Union", "riverbendcu.example", "Financial services", "St. Louis",
     "United States", None),
]
# Who owns the accounts, in turn (children follow their parent).
ACCOUNT_OWNERS = ("sam", "sara", "sam", "sara", "team", "mia", "sam", "sara", "sam", "sara",
                   "admin")

FIRST_NAMES = ("Aisha Ben Carmen Daniel Elena Farid Grace Hiroshi Ingrid Jamal Katarzyna Liam "
               "Mei Nadia Oscar Priya Quentin Rafael Sofia Tomas Uma Victor Wen Ximena Yara "
               "Zane Amelia Bruno Chloe Diego Eva Finn Hana Ivan Julia Kofi Lena Marco Nora "
               "Omar Paula Ravi Sana Theo Ursula Vikram Willa").split()
LAST_NAMES = ("Andersen Baptiste Chen Dvorak Eriksen Fontaine Gallagher Haddad Ibrahim Jansen "
              "Kowalczyk Lindgren Moreau Nakamura Oyelaran Petrov Quiroga Rahman Santos Tanaka "
              "Ueda Valdez Whitfield Xu Yilmaz Zimmermann Becker Castillo Duarte Esposito "
              "Fischer Guerrero Holm Iyer Jovanovic Keller").split()
JOB_TITLES = ("Purchasing Manager", "Chief Financial Officer", "IT Director", "Operations Manager",
              "Office Manager", "Head of Procurement", "Facilities Coordinator",
              "Chief Executive Officer", "Project Manager", "Buyer", "Controller",
              "Customer Success Lead", "Logistics Coordinator", "VP Sales", "Account Payable Clerk")
LEAD_COMPANIES = (
    ("Pinecrest Dental", "pinecrestdental.example"), ("Copperleaf Studios", "copperleaf.example"),
    ("Hollow Creek Farms", "hollowcreekfarms.example"), ("Starling Robotics", "starling-robotics.example"),
    ("Maple Row Bakery", "maplerowbakery.example"), ("Tidewater Freight", "tidewaterfreight.example"),
    ("Quillfeather Books", "quillfeather.example"), ("Sunvale Clinics", "sunvaleclinics.example"),
    ("Blackrock Fitness", "blackrockfitness.example"), ("Evergreen Architects", "evergreenarch.example"),
)
PRODUCTS = ("200 laptops", "Fleet telematics rollout", "Annual support renewal", "Office fit-out",
            "Warehouse scanners", "Cloud backup upgrade", "Conference room displays",
            "Managed print services", "Field tablets", "Network refresh", "Security training",
            "Point-of-sale terminals", "Onboarding services", "Data center racks")
CASE_TITLES = ("Printer shows paper jam error", "Invoice amount does not match quote",
               "Laptop battery drains overnight", "Cannot sign in to the portal",
               "Delivery arrived damaged", "Scanner firmware update failed",
               "Request for replacement part", "Display flickers after update",
               "Warranty question about model X200", "Order stuck in processing",
               "VPN drops every hour", "Wrong item shipped")
TASK_SUBJECTS = ("Send revised quote", "Prepare proposal", "Follow up on pricing questions",
                 "Book a product demo", "Check contract renewal date", "Update decision makers",
                 "Send case study", "Confirm delivery schedule", "Review support history",
                 "Call back about invoice")
MEETING_SUBJECTS = ("Discovery call", "Product demo", "Quarterly business review",
                    "Proposal walkthrough", "Contract negotiation", "Site visit",
                    "Onboarding kick-off")
LOCATIONS = ("Microsoft Teams meeting", "Customer office", "Contoso HQ, room Harbor",
             "Phone conference", "Contoso HQ, room Summit")
